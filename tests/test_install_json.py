"""`metalstream install --json`: the dry run's full plan, the image, and the target's current partitions
listed as to be destroyed (a disk image file given a real GPT and ext4 by sfdisk and mkfs)."""
from __future__ import annotations

import hashlib
import json
import subprocess

from conftest import require_tools, run_cli
from fixtures_images import write_image_manifest

MIB = 1 << 20


def _disk_with_partitions(path) -> None:
    """2 GiB sparse file: GPT with `old-root` (ext4, labelled) at 1 MiB and an empty `old-data` after it."""
    with open(path, "wb") as f:
        f.truncate(2048 * MIB)
    subprocess.run(["sfdisk", "--quiet", str(path)], check=True, text=True,
                   input="label: gpt\nstart=2048, size=204800, name=old-root\nstart=206848, size=409600, name=old-data\n")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "oldroot", "-U", "d7b3c6a0-1111-4222-8333-944455556666",
                    "-E", f"offset={MIB}", str(path), f"{204800 // 2}k"], check=True)


def test_dry_run_json_lists_the_partitions_to_be_destroyed(tmp_path):
    require_tools("sfdisk", "mkfs.ext4", "blkid", "wipefs")
    disk = tmp_path / "disk.img"
    _disk_with_partitions(disk)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    (tmp_path / "img.tar.zst").write_bytes(b"not read by a dry run")
    manifest = write_image_manifest(tmp_path / "img.tar.zst", "img")
    image = json.loads(manifest.read_text())

    result = run_cli("install", str(manifest), "--to", str(disk), "--boot", "uefi", "--wipe", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is the document alone; progress went to stderr
    assert "dry run: nothing was written" in result.stderr
    assert report["format"] == "metalstream-install-report/1" and report["dry_run"] is True
    assert report["target"] == {"path": str(disk), "size": 2048 * MIB, "is_file": True, "sector_size": 512}
    assert (report["image"]["name"], report["image"]["sha256"], report["image"]["size"]) == (
        "img", image["sha256"], image["size"])
    roles = [p["role"] for p in report["layout"]["partitions"]]
    assert roles[0] == "esp" and "root" in roles and report["boot_mode"] == "uefi"
    assert report["sfdisk_script"].startswith("label: gpt") and "destroyed" not in report
    gone = report["to_be_destroyed"]
    assert gone["partition_table"] == "gpt"
    assert [(p["number"], p["name"], p["start"], p["size"], p["size_bytes"]) for p in gone["partitions"]] == [
        (1, "old-root", 2048, 204800, 100 * MIB), (2, "old-data", 206848, 409600, 200 * MIB)]
    assert (gone["partitions"][0]["fstype"], gone["partitions"][0]["label"], gone["partitions"][0]["fs_uuid"]) == (
        "ext4", "oldroot", "d7b3c6a0-1111-4222-8333-944455556666")
    assert gone["partitions"][1]["fstype"] is None
    assert "gpt" in {s["type"] for s in gone["signatures"]}
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before  # nothing written

    refused = run_cli("install", str(manifest), "--to", str(disk), "--dry-run", "--json")  # no --wipe
    assert refused.returncode == 2 and refused.stdout == "" and "--wipe" in refused.stderr


def test_dry_run_json_on_a_new_file_destroys_nothing(tmp_path):
    (tmp_path / "img.tar.zst").write_bytes(b"not read by a dry run")
    manifest = write_image_manifest(tmp_path / "img.tar.zst", "img")
    result = run_cli("install", str(manifest), "--to", str(tmp_path / "new.img"), "--size", "4G", "--dry-run",
                     "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["to_be_destroyed"] == {"partition_table": None, "partitions": [], "signatures": []}
    assert report["target"]["size"] == 4 << 30 and not (tmp_path / "new.img").exists()
