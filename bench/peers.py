"""The peers' own deployment methods beside `metalstream install`: the same content, the same kind of disk
(a fresh 8 GiB sparse disk image file per run), the same run; locally and through shaped links.

* metalstream: `metalstream install URL/NAME.json --to disk.img ...` (fetches the manifest and the tarball over
  HTTP, streams, verifies the sha256, partitions, formats, configures, installs grub, syncs).
* curtin/MAAS style: the same root as a gzip tarball, `curl URL | tar -C ROOT --numeric-owner --xattrs
  -Sxpzf -` onto a freshly partitioned and formatted disk (GPT with ESP + root, mkfs.vfat, mkfs.ext4), fstab,
  sync. curtin's later hooks (grub, initramfs, network config) are not run.
* Ironic style: a whole-disk image of a disk `metalstream install` produced, as qcow2 and compressed qcow2,
  downloaded to memory (tmpfs) first and then written with `qemu-img convert -O raw` as ironic-python-agent
  does; and as a raw zstd image streamed with `curl URL | zstd -dc > disk`. Then sync.

Each link row runs every method `runs` times, interleaved. The files the peers need are made once per image
(by sha256) in the work directory and reused.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deployer.blockdev import loop_device, mounted
from lab.shaped_link import ShapedLink, free_plan
from metalstream import proc

from . import deploy, host
from .stats import figure, ratio

METHODS = ("metalstream", "curtin_tgz", "ironic_qcow2", "ironic_qcow2_compressed", "ironic_raw_zstd")
LABELS = {"metalstream": "metalstream install", "curtin_tgz": "curtin/MAAS tgz", "ironic_qcow2": "Ironic qcow2",
          "ironic_qcow2_compressed": "Ironic qcow2 -c", "ironic_raw_zstd": "Ironic raw.zst"}
LINKS = (("local", None), ("1gbit", 1000), ("10gbit", 10000))
GOAL_LINKS = ("1gbit", "10gbit")
GZIP_LEVEL = 6  # gzip's default: what `tar -czf` makes
ZSTD_LEVEL = 10  # the builder's default for the tarball
ESP_MIB = 512  # the ESP metalstream makes
EFFECTIVE_SHAPING = 0.8  # a link row is link-bound when a plain download reaches this share of the nominal rate
TAR_OPTIONS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-Sxpzf", "-"]  # curtin's extract
WHY_FASTER = {
    "curtin_tgz": "it extracts without checking a sha256 and configures nothing (no host keys, machine-id, "
                  "hostname or grub: curtin's hooks are not run here)",
    "ironic_qcow2": "qemu-img copies the allocated clusters as blocks: no partitioning, mkfs or per-file work, no "
                    "per-machine configuration and no checksum",
    "ironic_qcow2_compressed": "qemu-img copies the allocated clusters as blocks: no partitioning, mkfs or per-file "
                               "work, no per-machine configuration and no checksum",
    "ironic_raw_zstd": "it is a block copy: no partitioning, mkfs, per-file extraction, per-machine configuration "
                       "or checksum, and the disk's free space is holes that zstd --sparse skips",
}

WHY_SMALLER = {
    "ironic_raw_zstd": ": the whole disk compressed at the tarball's zstd level comes out smaller than the tar "
                       "stream of the same files (not isolated: tar's per-file headers and 512-byte padding, the "
                       "data's order)",
}


@dataclass(frozen=True)
class Files:
    """What each method fetches, all in one directory (served as it is over the links)."""
    directory: Path
    manifest: str
    tarball: str
    tgz: str = "root.tar.gz"
    qcow2: str = "whole-disk.qcow2"
    qcow2_compressed: str = "whole-disk-c.qcow2"
    raw_zstd: str = "whole-disk.raw.zst"

    def fetched(self, method: str) -> list[str]:
        return {"metalstream": [self.manifest, self.tarball], "curtin_tgz": [self.tgz],
                "ironic_qcow2": [self.qcow2], "ironic_qcow2_compressed": [self.qcow2_compressed],
                "ironic_raw_zstd": [self.raw_zstd]}[method]

    def size(self, method: str) -> int:
        return sum((self.directory / name).stat().st_size for name in self.fetched(method))


@dataclass(frozen=True)
class Source:
    """Where a method's files come from: this machine's files (`link` None) or nginx across a shaped link."""
    files: Files
    link: ShapedLink | None = None

    def location(self, name: str) -> str:
        return self.link.plan.url(name) if self.link else str(self.files.directory / name)

    def client(self, argv: list[str]) -> list[str]:
        return self.link.plan.in_client(argv) if self.link else argv

    def fetch(self, name: str) -> list[str]:
        """argv writing the file to stdout."""
        if self.link:
            return self.client(["curl", "-sS", "--fail", self.location(name)])
        return ["cat", self.location(name)]


def prepare(manifest: Path, tarball: Path, work: Path, echo) -> Files:
    """The peers' files for this image, made once (keyed by the tarball's sha256) and reused."""
    data = json.loads(manifest.read_text())
    directory = work / f"peers-{data['sha256'][:16]}"
    directory.mkdir(parents=True, exist_ok=True)
    files = Files(directory, manifest.name, tarball.name)
    for name, source in ((files.manifest, manifest), (files.tarball, tarball)):
        link = directory / name
        if not link.exists():
            link.symlink_to(source.resolve())
    started = time.monotonic()
    if not (directory / files.tgz).exists():
        echo(f"  peers: making the tgz root (gzip -{GZIP_LEVEL})")
        _atomic(directory / files.tgz, lambda out: proc.run(
            ["bash", "-o", "pipefail", "-c", f'zstd -dcq "$1" | gzip -{GZIP_LEVEL} -n > "$2"', "tgz", tarball, out],
            timeout=3600))
    wholes = (files.qcow2, files.qcow2_compressed, files.raw_zstd)
    if not all((directory / name).exists() for name in wholes):
        echo("  peers: making the whole-disk images from a disk metalstream install produced")
        disk = directory / "whole-disk.img"
        disk.unlink(missing_ok=True)
        try:
            proc.run(deploy.install_argv(manifest, disk), timeout=3600)
            _atomic(directory / files.qcow2, lambda out: proc.run(
                ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", disk, out], timeout=3600))
            _atomic(directory / files.qcow2_compressed, lambda out: proc.run(
                ["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", disk, out], timeout=3600))
            _atomic(directory / files.raw_zstd, lambda out: proc.run(
                ["zstd", "-q", "-T0", f"-{ZSTD_LEVEL}", disk, "-o", out], timeout=3600))
        finally:
            disk.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    if seconds > 1:
        echo(f"  peers: files made in {seconds:.0f} s")
    return files


def _atomic(path: Path, make: Callable[[Path], object]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        make(partial)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)


def run_metalstream(source: Source, disk: Path, scratch: Path) -> None:
    argv = deploy.install_argv(source.location(source.files.manifest), disk)  # a path or a URL
    host.timed(source.client(argv))


def run_curtin(source: Source, disk: Path, scratch: Path) -> None:
    host.sparse_file(disk, deploy.DISK_SIZE)
    proc.run(["sfdisk", "--quiet", disk], input=f"label: gpt\n,{ESP_MIB}MiB,U\n,,L\n")
    parts = json.loads(proc.run(["sfdisk", "--json", disk]).stdout)["partitiontable"]["partitions"]
    (esp_start, esp_size), (root_start, root_size) = [(p["start"] * 512, p["size"] * 512) for p in parts]
    with loop_device(disk, offset=esp_start, size=esp_size) as esp, \
            loop_device(disk, offset=root_start, size=root_size) as root_dev:
        proc.run(["mkfs.vfat", "-F", "32", esp])
        proc.run(["mkfs.ext4", "-F", "-q", root_dev])
        with mounted(root_dev, scratch / "root", "ext4") as root:
            proc.run(["bash", "-o", "pipefail", "-c", 'dest=$1; shift; "$@" | tar -C "$dest" ' + " ".join(
                f"'{option}'" for option in TAR_OPTIONS), "curtin", root, *source.fetch(source.files.tgz)],
                timeout=3600)
            uuids = [proc.run(["blkid", "-s", "UUID", "-o", "value", dev]).stdout.strip() for dev in (root_dev, esp)]
            (root / "etc").mkdir(exist_ok=True)
            (root / "etc/fstab").write_text(f"UUID={uuids[0]} / ext4 defaults 0 1\n"
                                            f"UUID={uuids[1]} /boot/efi vfat umask=0077 0 1\n")
    host.settle()


def _qemu_img(name_attr: str) -> Callable[[Source, Path, Path], None]:
    def run(source: Source, disk: Path, scratch: Path) -> None:
        name = getattr(source.files, name_attr)
        image = Path(source.location(name))
        if source.link:  # ironic-python-agent downloads into memory first, then converts
            image = Path("/dev/shm") / f"metalstream-bench-{os.getpid()}-{name}"
        try:
            if source.link:
                proc.run(source.client(["curl", "-sS", "--fail", "-o", str(image), source.location(name)]),
                         timeout=3600)
            host.sparse_file(disk, deploy.DISK_SIZE)
            proc.run(["qemu-img", "convert", "-n", "-W", "-f", "qcow2", "-O", "raw", image, disk], timeout=3600)
        finally:
            if source.link:
                image.unlink(missing_ok=True)
        host.settle()
    return run


def run_raw_zstd(source: Source, disk: Path, scratch: Path) -> None:
    proc.run(["bash", "-o", "pipefail", "-c", 'disk=$1; shift; "$@" | zstd -dcq --sparse > "$disk"', "raw", disk,
              *source.fetch(source.files.raw_zstd)], timeout=3600)
    host.settle()


RUNNERS = {"metalstream": run_metalstream, "curtin_tgz": run_curtin, "ironic_qcow2": _qemu_img("qcow2"),
           "ironic_qcow2_compressed": _qemu_img("qcow2_compressed"), "ironic_raw_zstd": run_raw_zstd}


def once(method: str, source: Source, work: Path) -> tuple[float, int | None]:
    """(seconds, bytes the client received over the link or None locally) of one deployment onto a fresh disk."""
    disk, scratch = work / "peers-disk.img", work / "peers-scratch"
    disk.unlink(missing_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    host.settle()
    before = source.link.received_bytes() if source.link else None
    started = time.monotonic()
    try:
        RUNNERS[method](source, disk, scratch)
        seconds = time.monotonic() - started
    finally:
        disk.unlink(missing_ok=True)
    received = source.link.received_bytes() - before if source.link else None
    return seconds, received


def bench_peers(manifest: Path, tarball: Path, runs: int, work: Path, echo, *, package: dict | None = None,
                links=LINKS) -> dict:
    echo("peers: metalstream install vs curtin/MAAS tgz vs Ironic whole-disk images, local and shaped links")
    files = prepare(manifest, tarball, work, echo)
    rows = {}
    for name, rate in links:
        if rate is None:
            rows[name] = _row(name, Source(files), runs, work, echo)
            continue
        with ShapedLink(free_plan(rate), files.directory, work) as link:
            measured = link.download_rate(files.tarball)
            nominal = rate * 1_000_000 / 8 / 2**20
            rows[name] = _row(name, Source(files, link), runs, work, echo)
            rows[name]["link"] = {"nominal_mib_s": round(nominal, 1), "measured_mib_s": round(measured, 1),
                                  "shaping_effective": measured >= EFFECTIVE_SHAPING * nominal}
            echo(f"  {name}: a plain download reached {measured:.0f} MiB/s of a nominal {nominal:.0f}")
    sizes = {method: files.size(method) for method in METHODS}
    return summarize(rows, sizes, package)


def _row(name: str, source: Source, runs: int, work: Path, echo) -> dict:
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    received: dict[str, list[int]] = {m: [] for m in METHODS}
    for index in range(runs):
        for method in METHODS:
            took, got = once(method, source, work)
            seconds[method].append(took)
            if got is not None:
                received[method].append(got)
            echo(f"  {name} run {index + 1}/{runs}: {LABELS[method]:<20} {took:6.1f} s"
                 + (f", {got / 2**20:.0f} MiB received" if got is not None else ""))
    return {"methods": {m: {"seconds": figure(seconds[m]),
                            **({"wire_bytes": max(received[m])} if received[m] else {})} for m in METHODS}}


def summarize(rows: dict, sizes: dict[str, int], package: dict | None) -> dict:
    """Ratios to metalstream per row, the goal and plain notes on every peer that wins (pure)."""
    notes = []
    fewest = min(sizes.values())
    if sizes["metalstream"] > fewest:
        winner = min(sizes, key=sizes.get)
        notes.append(f"{LABELS[winner]} moves fewer bytes ({sizes[winner] / 2**20:.0f} MiB vs "
                     f"{sizes['metalstream'] / 2**20:.0f} MiB){WHY_SMALLER.get(winner, '')}")
    wins: dict[str, list[str]] = {}
    fastest_everywhere = True
    for name, row in rows.items():
        ours = row["methods"]["metalstream"]["seconds"]
        for method, record in row["methods"].items():
            record["bytes"] = sizes[method]
            record["ratio"] = ratio(record["seconds"], ours)  # > 1: metalstream is faster
            if row.get("link", {}).get("measured_mib_s"):  # the transfer alone, at what the link really carried
                record["link_floor_seconds"] = round(sizes[method] / 2**20 / row["link"]["measured_mib_s"], 2)
            if method != "metalstream" and record["ratio"] is not None and record["ratio"] < 1:
                fastest_everywhere = fastest_everywhere and name not in GOAL_LINKS
                wins.setdefault(method, []).append(
                    f"{name} {record['seconds']['median']:.2f} s vs {ours['median']:.2f} s")
    for method, where in wins.items():
        notes.append(f"{LABELS[method]} is faster ({', '.join(where)}): {WHY_FASTER[method]}")
    for name, row in rows.items():
        link = row.get("link")
        if link and not link["shaping_effective"]:
            notes.append(f"{name}: veth + tc on this machine could not reach the nominal rate (a plain download made "
                         f"{link['measured_mib_s']:.0f} of {link['nominal_mib_s']:.0f} MiB/s): the row is bound by "
                         f"this machine's CPU, not by the link")
    goal_rows = [name for name in GOAL_LINKS if name in rows]
    met = bool(goal_rows) and fastest_everywhere and sizes["metalstream"] == fewest
    result = {"links": rows, "bytes": sizes,
              "goal": "metalstream install fastest at 1 and 10 Gbit/s and moving the fewest bytes", "met": met,
              "notes": "; ".join(notes) or "metalstream install is the fastest everywhere and moves the fewest bytes"}
    if package:
        result["package_install"] = package
    return result
