"""Streaming a large image keeps the process's memory flat (a resource check, not a timing check)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO, require_tools
from fixtures_stream import Fault

IMAGE_MIB = 512
MAX_GROWTH_MIB = 48  # chunks are 1 MiB; anything proportional to the image would be hundreds

CHILD = r"""
import json, sys
from pathlib import Path
from deployer.stream import stream_image
from deployer.download import RetryPolicy

def hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

url, dest, sha256, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
before = hwm_kib()
result = stream_image(url, Path(dest), sha256=sha256, size=size, progress=lambda done, total: None,
                      retry=RetryPolicy(backoff=0.01))
print(json.dumps({"before_kib": before, "after_kib": hwm_kib(), "bytes": result.bytes_read,
                  "resumes": result.resumes}))
"""


def test_streaming_half_a_gigabyte_keeps_memory_flat(file_server, tmp_path):
    require_tools("tar", "zstd", "sha256sum")
    work = tmp_path / "big"
    try:
        tree = work / "tree"
        tree.mkdir(parents=True)
        subprocess.run(["head", "-c", f"{IMAGE_MIB}M", "/dev/urandom"], stdout=open(tree / "blob", "wb"), check=True)
        image = work / "big.tar.zst"
        subprocess.run(f"tar -C {tree} -c . | zstd -q -1 -T2 -o {image}", shell=True, check=True)
        (tree / "blob").unlink()
        size = image.stat().st_size
        digest = subprocess.run(["sha256sum", str(image)], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        url = file_server.serve("big.tar.zst", image)
        # One drop in the middle too: resuming must not buffer either.
        file_server.fault("big.tar.zst", Fault(at=size // 2 + 12345))
        dest = work / "dest"
        dest.mkdir()
        child = subprocess.run([sys.executable, "-c", CHILD, url, str(dest), digest, str(size)],
                               capture_output=True, text=True, cwd=REPO, timeout=600,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout)
        growth_mib = (report["after_kib"] - report["before_kib"]) / 1024
        print(f"streamed {size >> 20} MiB, peak RSS {report['before_kib'] >> 10} -> {report['after_kib'] >> 10} MiB")
        assert report["bytes"] == size and size > IMAGE_MIB * 2**20
        assert report["resumes"] == 1
        assert (dest / "blob").stat().st_size == IMAGE_MIB * 2**20
        assert growth_mib < MAX_GROWTH_MIB, f"peak RSS grew by {growth_mib:.0f} MiB while streaming {size >> 20} MiB"
    finally:
        shutil.rmtree(work, ignore_errors=True)
