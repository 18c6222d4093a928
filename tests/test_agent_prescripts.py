"""%pre scripts at deploy time (real /bin/sh) and the deferred %include they write, down to the partition table
`metalstream install` writes onto a disk image file."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from deployer.deferred import read_includes, run_deploy_time
from deployer.plan import local_plan
from deployer.prescripts import run_pre_scripts
from metalstream.contracts.deployspec import DeferredInclude, DeploySpec, PreScript
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.errors import BadInput, OperationFailed

from conftest import require_root, require_tools, run_cli
from fixtures_agent import blkid, gpt_partitions, partition_loop

MIB = 1 << 20


def test_a_pre_script_runs_with_its_interpreter_and_writes_a_file(tmp_path):
    out = tmp_path / "written"
    warnings = []
    run_pre_scripts([PreScript(script=f'echo "$0 ran" > {out}\n', interpreter="/bin/sh", line=2)],
                    warn=warnings.append)
    assert out.read_text().endswith("ran\n") and warnings == []


def test_a_failing_erroronfail_script_stops_with_its_kickstart_line(tmp_path):
    script = PreScript(script="echo first >&2\necho 'no disk here' >&2\nexit 3\n", erroronfail=True, line=7)
    with pytest.raises(OperationFailed) as caught:
        run_pre_scripts([script, PreScript(script=f"touch {tmp_path / 'never'}\n")], warn=lambda m: None)
    assert str(caught.value) == "%pre at kickstart line 7: exit status 3: first | no disk here"
    assert not (tmp_path / "never").exists()  # nothing after the failing script runs


def test_a_failing_script_without_erroronfail_is_a_warning_and_the_rest_runs(tmp_path):
    warnings = []
    run_pre_scripts([PreScript(script="false\n", line=4), PreScript(script=f"touch {tmp_path / 'next'}\n")],
                    warn=warnings.append)
    assert warnings == ["%pre at kickstart line 4: exit status 1 (no --erroronfail: the install goes on)"]
    assert (tmp_path / "next").exists()


def test_the_log_option_gets_the_output_and_the_agent_log_too(tmp_path, caplog):
    log = tmp_path / "var/log/pre.log"
    log.parent.mkdir(parents=True)
    log.write_text("before\n")
    with caplog.at_level(logging.INFO, logger="metalstream.pre"):
        run_pre_scripts([PreScript(script="echo out\necho err >&2\n", log=str(log), line=9)], warn=lambda m: None)
    assert log.read_text() == "before\nout\nerr\n"
    assert "%pre at kickstart line 9: out" in caplog.text


def test_an_interpreter_that_is_not_there_fails_the_erroronfail_script():
    with pytest.raises(OperationFailed, match=r"^%pre at kickstart line 1: /no/python3: command not found"):
        run_pre_scripts([PreScript(script="print()\n", interpreter="/no/python3", erroronfail=True, line=1)],
                        warn=lambda m: None)


def test_a_script_that_runs_too_long_is_stopped():
    with pytest.raises(OperationFailed, match=r"^%pre at kickstart line 5: timed out after 1 s"):
        run_pre_scripts([PreScript(script="sleep 30\n", erroronfail=True, line=5)], warn=lambda m: None,
                        timeout=1)


def test_an_include_the_pre_did_not_write_is_located_at_its_line(tmp_path):
    missing = DeferredInclude(path=str(tmp_path / "part-include"), line=12)
    with pytest.raises(BadInput) as caught:
        read_includes([missing])
    assert str(caught.value) == f"%include {missing.path} (kickstart line 12): the %pre did not write it"


def _plan(storage: DeploySpec) -> Plan:
    return Plan(deployment_id="d", image=ImageRef(name="i", url="http://127.0.0.1/i.tar.zst", sha256="0" * 64,
                                                  size=1), storage=storage)


def test_deploy_time_runs_the_pre_then_hands_the_written_text_to_the_resolver(tmp_path):
    include = tmp_path / "part-include"
    storage = DeploySpec(pre_scripts=[PreScript(script=f"echo 'part / --grow' > {include}\n", line=2)],
                         deferred_includes=[DeferredInclude(path=str(include), line=5)])
    seen, events = [], []

    def resolve(spec, included):
        seen.append(included)
        return DeploySpec(partitions=spec.partitions, deferred_includes=spec.deferred_includes)

    plan = run_deploy_time(_plan(storage), resolve, lambda phase, message: events.append((phase, message)))
    assert seen == [[(DeferredInclude(path=str(include), line=5), "part / --grow\n")]]
    assert plan.storage.pre_scripts == [] and plan.storage.deferred_includes == []
    assert events == [("disk", "running 1 %pre script(s)"),
                      ("disk", f"storage from %include {include} (1 lines)")]


def test_without_a_resolver_a_deferred_include_is_refused_after_the_pre(tmp_path):
    include = tmp_path / "x"
    storage = DeploySpec(pre_scripts=[PreScript(script=f"touch {include}\n")],
                         deferred_includes=[DeferredInclude(path=str(include), line=5)])
    with pytest.raises(BadInput, match="no kickstart front end here"):
        run_deploy_time(_plan(storage), None, lambda phase, message: None)


@pytest.mark.root
def test_install_partitions_the_disk_as_the_pre_written_include_says(synthetic_image, sparse_disk, agent_workdir,
                                                                      tmp_path):
    """Acceptance 6: a %pre inspects the disks and writes the layout the kickstart %includes."""
    require_root()
    require_tools("sfdisk", "losetup", "wipefs", "mkfs.ext4", "mkfs.vfat", "mkfs.xfs", "mcopy", "grub-mkimage")
    disk = sparse_disk(3 << 30)
    include = tmp_path / "part-include"
    script = (f"disks=$(ls /sys/block | wc -l)\n"
              f"cat > {include} <<EOT\n"
              f"# chosen by %pre: $disks block devices\n"
              f"part /boot --fstype=ext4 --size=300\n"
              f"part / --fstype=xfs --size=1024 --grow\n"
              f"EOT\n")
    storage = {"pre_scripts": [{"script": script, "interpreter": "/bin/sh", "erroronfail": True, "line": 2}],
               "deferred_includes": [{"path": str(include), "line": 9}]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**local_plan(str(synthetic_image)).to_json(), "deployment_id": "pre-include",
                                "storage": storage, "boot_mode": "uefi"}))
    result = run_cli("install", "--plan", str(plan), "--to", str(disk))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"storage from %include {include} (3 lines)" in result.stdout
    parts = gpt_partitions(disk)
    sizes = [p["size"] * 512 // MIB for p in parts]
    assert len(parts) == 3 and sizes[1] == 300 and sizes[2] > 2000, parts
    for part, fstype in ((parts[1], "ext4"), (parts[2], "xfs")):
        with partition_loop(disk, part) as device:
            assert blkid(device)["TYPE"] == fstype


@pytest.mark.root
def test_install_stops_before_any_write_when_the_include_is_wrong(synthetic_image, sparse_disk, tmp_path):
    require_root()
    disk = sparse_disk(1 << 30)
    include = tmp_path / "part-include"
    storage = {"pre_scripts": [{"script": f"echo 'part /srv --size=100' > {include}\n", "line": 2}],
               "deferred_includes": [{"path": str(include), "line": 9}]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**local_plan(str(synthetic_image)).to_json(), "deployment_id": "pre-include",
                                "storage": storage}))
    result = run_cli("install", "--plan", str(plan), "--to", str(disk))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{include}:1: the layout has no `/`" in result.stderr
    assert Path(disk).read_bytes().count(0) == 1 << 30  # untouched


def test_an_included_encrypted_layout_without_a_passphrase_is_refused_before_the_disks(tmp_path):
    include = tmp_path / "part-include"
    storage = DeploySpec(pre_scripts=[PreScript(
        script=f"printf 'part /boot --size=1024\\npart / --grow --size=1000 --encrypted\\n' > {include}\n")],
                         deferred_includes=[DeferredInclude(path=str(include), line=5)])
    from tarball_builder.kickstart.fragment import merge_includes

    with pytest.raises(BadInput) as caught:
        run_deploy_time(_plan(storage), merge_includes, lambda phase, message: None)
    assert str(caught.value) == (f"%include {include} (kickstart line 5): the layout encrypts devices (--encrypted) "
                                 "but the plan gives no passphrase (encryption_passphrase)")


def test_a_passphrase_for_an_included_layout_that_encrypts_nothing_is_refused(tmp_path):
    include = tmp_path / "part-include"
    storage = DeploySpec(pre_scripts=[PreScript(script=f"echo 'part / --grow --size=1000' > {include}\n")],
                         deferred_includes=[DeferredInclude(path=str(include), line=5)])
    from tarball_builder.kickstart.fragment import merge_includes

    plan = dataclasses.replace(_plan(storage), encryption_passphrase="not for plaintext")
    with pytest.raises(BadInput, match="encrypts nothing") as caught:
        run_deploy_time(plan, merge_includes, lambda phase, message: None)
    assert "not for plaintext" not in str(caught.value)
