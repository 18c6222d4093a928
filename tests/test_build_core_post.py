"""%post on a small real root: interpreter, --nochroot, --erroronfail semantics, --log, located errors."""
from __future__ import annotations

import pytest

from metalstream.contracts.deployspec import DeploySpec
from metalstream.errors import OperationFailed
from tarball_builder.context import BuildContext, BuildOptions
from tarball_builder.spec import BuildSpec, Distribution, Script, SplitKickstart
from tarball_builder.stages.post import PostStage

from conftest import require_root, require_tools
from fixtures_build import host_mounts_under

pytestmark = pytest.mark.root


def _ctx(tmp_path, root, scripts) -> BuildContext:
    require_root()
    require_tools("unshare", "chroot")
    spec = BuildSpec(distribution=Distribution("debian", "bookworm"), post=scripts)
    ks = SplitKickstart(build=spec, deploy=DeploySpec(), source="p.ks", sha256="0" * 64)
    work = tmp_path / "work"
    work.mkdir()
    return BuildContext(kickstart=ks, options=BuildOptions(output_dir=tmp_path, name="p", cache_dir=tmp_path / "cache"), root=root,
                        workdir=work, source_date_epoch=1_700_000_000)


def test_scripts_run_in_order_inside_and_outside_the_root(tmp_path, busybox_root):
    scripts = [Script(body="echo first > /etc/order\n", line=3),
               Script(body='echo second >> "$METALSTREAM_ROOT/etc/order"; echo "$ANA_INSTALL_PATH" > "$METALSTREAM_ROOT/etc/ana"\n',
                      nochroot=True, interpreter="/bin/bash", line=6),
               Script(body="echo $SOURCE_DATE_EPOCH; echo logged\n", log="/var/log/post.log", line=9)]
    ctx = _ctx(tmp_path, busybox_root, scripts)
    PostStage().run(ctx)
    assert (busybox_root / "etc/order").read_text() == "first\nsecond\n"
    assert (busybox_root / "etc/ana").read_text().strip() == str(busybox_root.resolve())
    assert (busybox_root / "var/log/post.log").read_text() == "1700000000\nlogged\n"
    assert not list((busybox_root / "tmp").glob("metalstream-post-*"))  # script files are not left in the image
    assert host_mounts_under(busybox_root) == []


def test_failure_with_erroronfail_names_line_and_output(tmp_path, busybox_root):
    ctx = _ctx(tmp_path, busybox_root, [Script(body="echo oops >&2\nexit 4\n", error_on_fail=True, line=12)])
    with pytest.raises(OperationFailed) as err:
        PostStage().run(ctx)
    assert str(err.value) == "p.ks:12: %post failed with exit status 4:\noops"
    assert host_mounts_under(busybox_root) == []


def test_failure_without_erroronfail_also_fails_the_build(tmp_path, busybox_root):
    ctx = _ctx(tmp_path, busybox_root, [Script(body="exit 1\n", error_on_fail=False, line=5),
                                        Script(body="touch /etc/after\n", line=8)])
    with pytest.raises(OperationFailed) as err:
        PostStage().run(ctx)
    assert str(err.value) == "p.ks:5: %post failed with exit status 1"
    assert not (busybox_root / "etc/after").exists()
    assert host_mounts_under(busybox_root) == []


def test_missing_interpreter_is_named(tmp_path, busybox_root):
    ctx = _ctx(tmp_path, busybox_root, [Script(body="print(1)\n", interpreter="/usr/bin/python3", line=7)])
    with pytest.raises(OperationFailed) as err:
        PostStage().run(ctx)
    assert str(err.value).startswith("p.ks:7: %post: interpreter /usr/bin/python3 is not in the image")
