"""A deferred %include's storage commands merged into the deploy spec by the front end (at deploy time), with the
same checks as a whole kickstart and errors at PATH:LINE."""
from __future__ import annotations

from pathlib import Path

import pytest

from metalstream.contracts.deployspec import DeferredInclude
from tarball_builder.kickstart import KickstartError, parse_deploy_kickstart
from tarball_builder.kickstart.fragment import merge_includes

CORPUS = Path(__file__).parent / "data/ks/corpus"


def _spec(tmp_path: Path, text: str):
    path = tmp_path / "deploy.ks"
    path.write_text(text)
    return parse_deploy_kickstart(path)


def _merge(spec, text: str, path: str = "/tmp/part-include"):
    [include] = [i for i in spec.deferred_includes if i.path == path]
    return merge_includes(spec, [(include, text)])


def _error(spec, text: str) -> tuple[str, list[str]]:
    with pytest.raises(KickstartError) as caught:
        _merge(spec, text)
    return caught.value.location, [str(d) for d in caught.value.diagnostics]


def test_the_corpus_pre_layout_merges_into_its_kickstarts_spec():
    spec = parse_deploy_kickstart(CORPUS / "rpm-pre-part-include.ks")
    assert spec.deferred_includes == [DeferredInclude(path="/tmp/part-include", line=10)]
    merged = _merge(spec, "part / --fstype=xfs --size=4096 --grow\n")
    [root] = merged.partitions
    assert (root.mountpoint, root.fstype, root.size_mib, root.grow, root.line) == ("/", "xfs", 4096, True, 10)
    assert merged.deferred_includes == [] and merged.pre_scripts == spec.pre_scripts


def test_an_lvm_layout_from_the_include_joins_the_kickstarts_partitions(tmp_path):
    spec = _spec(tmp_path, "clearpart --all\npart /boot --size=1024\n%include /tmp/part-include\n")
    merged = _merge(spec, "part pv.01 --size=4000 --grow\nvolgroup sys pv.01\n"
                          "logvol / --vgname=sys --name=root --size=3000 --grow\nlogvol swap --vgname=sys --name=swap "
                          "--size=512\n")
    assert [p.mountpoint for p in merged.partitions] == ["/boot", "pv.01"]
    assert [(v.name, v.mountpoint) for v in merged.logvols] == [("root", "/"), ("swap", "swap")]
    assert merged.volgroups[0].pvs == ["pv.01"] and merged.clearpart.mode == "all"


def test_a_part_for_a_mount_point_the_kickstart_has_replaces_it_and_one_value_commands_replace(tmp_path):
    spec = _spec(tmp_path, "clearpart --all\npart / --fstype=ext4 --size=1000\n%include /tmp/part-include\n")
    merged = _merge(spec, "clearpart --none\npart / --fstype=xfs --size=2000 --grow\n")
    assert [(p.mountpoint, p.fstype) for p in merged.partitions] == [("/", "xfs")]
    assert merged.clearpart.mode == "none"


def test_the_kickstarts_names_may_be_defined_by_the_include(tmp_path):
    spec = _spec(tmp_path, "part /boot --size=1024\nvolgroup sys pv.01\nlogvol / --vgname=sys --name=root --grow "
                           "--size=1000\n%include /tmp/part-include\n")
    assert [p.mountpoint for p in _merge(spec, "part pv.01 --grow --size=2000\n").partitions] == ["/boot", "pv.01"]
    location, problems = _error(spec, "part pv.02 --grow --size=2000\n")
    assert location == "/tmp/part-include:1"
    assert "/tmp/part-include:1: error: part pv.02: no volgroup uses pv.02" in problems
    assert any(p.startswith("kickstart:2: error: volgroup sys: not defined: pv.01") for p in problems), problems


@pytest.mark.parametrize("text,located,words", [
    ("\npart / --fstype=reiserfs --grow\n", "/tmp/part-include:2", "unsupported --fstype=reiserfs"),
    ("part /srv --size=100\n", "/tmp/part-include:1", "the layout has no `/`"),
    ("part / --grow --size=100\nnetwork --bootproto=dhcp\n", "/tmp/part-include:2", "storage commands only"),
    ("part / --grow --size=100\n%post\ntrue\n%end\n", "/tmp/part-include:2", "storage commands only"),
    ("%include /tmp/more\npart / --grow --size=100\n", "/tmp/part-include:1", "not supported"),
    ("part / --grow --size=abc\n", "/tmp/part-include:1", "abc"),
    ("raid / --level=1 --device=md0 raid.01\npart raid.01 --size=1000\n", "/tmp/part-include:1", "RAID1 needs at least 2 members"),
])
def test_a_bad_include_is_located_at_its_path_and_line(tmp_path, text, located, words):
    spec = _spec(tmp_path, "part /boot/efi --fstype=efi --size=200\n%include /tmp/part-include\n")
    location, problems = _error(spec, text)
    assert location == located and any(words in p for p in problems), problems


def test_autopart_from_the_include_cannot_join_the_kickstarts_partitions(tmp_path):
    spec = _spec(tmp_path, "part /home --size=1000\n%include /tmp/part-include\n")
    location, problems = _error(spec, "autopart --type=lvm\n")
    assert location == "/tmp/part-include:1" and "autopart cannot be combined" in problems[0]
    alone = _spec(tmp_path, "clearpart --all\n%include /tmp/part-include\n")
    assert _merge(alone, "autopart --type=lvm --nohome\n").autopart.scheme == "lvm"
