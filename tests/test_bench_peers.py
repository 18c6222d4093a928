"""bench/peers.py and lab/shaped_link.py: the pure parts (the link's commands, the summary and its goal), and
one real run of the peers section with the small synthetic image, locally and through two shaped links.
Only that the numbers exist and are consistent is checked; timings are never asserted."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench import peers
from bench.cli import render_table
from bench.stats import figure
from lab.shaped_link import LinkPlan
from metalstream.errors import BadInput

from conftest import require_root, require_tools


def test_link_plan_shapes_the_server_side_and_names_only_its_own_namespaces():
    plan = LinkPlan("123", 7, 1000)
    commands = plan.setup_commands()
    assert commands[0] == ["ip", "netns", "add", "mslk123-7s"] and commands[1] == ["ip", "netns", "add", "mslk123-7c"]
    tbf = commands[-1]
    assert tbf[:6] == ["tc", "-n", "mslk123-7s", "qdisc", "replace", "dev"] and "tbf" in tbf
    assert tbf[tbf.index("rate") + 1] == "1000mbit" and int(tbf[tbf.index("burst") + 1]) >= 256 << 10
    assert all(plan.server in " ".join(c) or plan.client in " ".join(c) or "addr" not in c for c in commands)
    assert plan.in_client(["curl", "x"]) == ["nsenter", "--net=/run/netns/mslk123-7c", "--", "curl", "x"]
    assert plan.url("a.json") == "http://10.233.7.1:8080/a.json"
    assert not any(c[0] == "tc" for c in LinkPlan("123", 7).setup_commands())
    assert plan.teardown_commands() == [["ip", "netns", "del", "mslk123-7s"], ["ip", "netns", "del", "mslk123-7c"]]
    with pytest.raises(BadInput):
        LinkPlan("x y", 1)
    with pytest.raises(BadInput):
        LinkPlan("1", 300)


def _row(**medians):
    return {"methods": {m: {"seconds": figure([medians.get(m, 10.0)])} for m in peers.METHODS}}


def test_summary_names_the_peer_that_wins_and_why():
    sizes = {"metalstream": 100, "curtin_tgz": 120, "ironic_qcow2": 400, "ironic_qcow2_compressed": 130,
             "ironic_raw_zstd": 90}
    rows = {"local": _row(metalstream=5.0, ironic_raw_zstd=4.0), "1gbit": _row(metalstream=5.0),
            "10gbit": _row(metalstream=5.0)}
    rows["10gbit"]["link"] = {"nominal_mib_s": 1192.1, "measured_mib_s": 700.0, "shaping_effective": False}
    result = peers.summarize(rows, sizes, None)
    assert result["met"] is False  # raw.zst moves fewer bytes
    assert "Ironic raw.zst moves fewer bytes" in result["notes"]
    assert "Ironic raw.zst is faster (local 4.00 s vs 5.00 s)" in result["notes"] and "block copy" in result["notes"]
    assert "10gbit: veth + tc" in result["notes"]
    assert result["links"]["local"]["methods"]["ironic_raw_zstd"]["ratio"] == 0.8
    assert result["links"]["1gbit"]["methods"]["curtin_tgz"]["ratio"] == 2.0
    assert result["links"]["10gbit"]["methods"]["ironic_qcow2"]["link_floor_seconds"] == round(400 / 2**20 / 700, 2)
    assert "link_floor_seconds" not in result["links"]["local"]["methods"]["ironic_qcow2"]
    sizes["ironic_raw_zstd"] = 200
    assert peers.summarize({k: _row(metalstream=5.0) for k in ("local", "1gbit", "10gbit")}, sizes, None)["met"]
    slower = {"local": _row(metalstream=5.0), "1gbit": _row(metalstream=11.0), "10gbit": _row(metalstream=5.0)}
    assert peers.summarize(slower, sizes, None)["met"] is False


@pytest.mark.root
def test_peers_section_runs_every_method_locally_and_through_shaped_links(synthetic_image, tmp_path):
    require_root()
    require_tools("nginx", "curl", "zstd", "gzip", "tar", "qemu-img", "tc", "nsenter", "sfdisk", "mkfs.ext4",
                  "mkfs.vfat", "mcopy")
    work = tmp_path / "work"
    work.mkdir()
    tarball = synthetic_image.with_suffix(".tar.zst")
    package = {"seconds": figure([60.0]), "from": "test"}
    result = peers.bench_peers(synthetic_image, tarball, 1, work, lambda line: None, package=package)

    assert set(result["links"]) == {"local", "1gbit", "10gbit"}
    directory = work / f"peers-{json.loads(synthetic_image.read_text())['sha256'][:16]}"  # prepare()'s
    assert result["bytes"]["metalstream"] == synthetic_image.stat().st_size + tarball.stat().st_size
    assert result["bytes"]["curtin_tgz"] == (directory / "root.tar.gz").stat().st_size
    for name, row in result["links"].items():
        ours = row["methods"]["metalstream"]["seconds"]
        assert set(row["methods"]) == set(peers.METHODS)
        for method, record in row["methods"].items():
            fig = record["seconds"]
            assert 0 < fig["min"] <= fig["median"] <= fig["max"] and len(fig["runs"]) == 1
            assert record["bytes"] == result["bytes"][method]
            assert record["ratio"] == round(fig["median"] / ours["median"], 3)
            if name == "local":
                assert "wire_bytes" not in record
            else:  # every byte of the files crossed the link, plus the protocols' headers
                assert record["wire_bytes"] >= record["bytes"]
                assert record["link_floor_seconds"] == round(
                    record["bytes"] / 2**20 / row["link"]["measured_mib_s"], 2)
        if name != "local":
            link = row["link"]
            assert link["measured_mib_s"] > 0
            assert link["shaping_effective"] == (link["measured_mib_s"] >= 0.8 * link["nominal_mib_s"])
    fewest = min(result["bytes"].values())
    fastest = all(r["methods"][m]["ratio"] >= 1 for n, r in result["links"].items() if n != "local"
                  for m in peers.METHODS)
    assert result["met"] == (fastest and result["bytes"]["metalstream"] == fewest)
    assert isinstance(result["notes"], str) and result["notes"]
    assert result["package_install"] == package

    table = render_table({"peers": result})
    assert "peers 1gbit: vs Ironic qcow2" in table and "peers: package install" in table

    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mslk{os.getpid() % 100000}-" not in leftovers
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(work) not in loops
    assert not list(Path("/dev/shm").glob(f"metalstream-bench-{os.getpid()}-*"))
    assert not list(work.glob("nginx-*"))
