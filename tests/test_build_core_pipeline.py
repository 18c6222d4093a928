"""The pipeline runner: progress lines per stage, cleanup of the partial root on failure or Ctrl-C."""
from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

from metalstream.contracts.deployspec import DeploySpec
from metalstream.errors import BadInput, OperationFailed
from tarball_builder import pipeline
from tarball_builder.context import BuildOptions
from tarball_builder.spec import BuildSpec, Distribution, SplitKickstart


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class WritesRoot:
    name = "fill"
    description = "write into the root"

    def __init__(self, clock: FakeClock):
        self.clock = clock

    def run(self, ctx) -> None:
        (ctx.root / "etc").mkdir(parents=True)
        (ctx.root / "etc/data").write_text("x")
        self.clock.now += 65


class Raises:
    name = "boom"
    description = "fail"

    def __init__(self, exc: BaseException):
        self.exc = exc

    def run(self, ctx) -> None:
        raise self.exc


class WritesManifest:
    name = "manifest"
    description = "write a manifest"

    def run(self, ctx) -> None:
        path = ctx.options.output_dir / f"{ctx.options.name}.json"
        path.write_text("{}")
        ctx.facts["manifest_path"] = path


def _kickstart() -> SplitKickstart:
    return SplitKickstart(build=BuildSpec(distribution=Distribution("debian", "bookworm")), deploy=DeploySpec(),
                          source="x.ks", sha256="0" * 64)


def _run(tmp_path: Path, stages, **options):
    out = io.StringIO()
    clock = stages[0].clock if hasattr(stages[0], "clock") else FakeClock()
    progress = pipeline.Progress(out, clock=clock, heartbeat=3600)
    opts = BuildOptions(output_dir=tmp_path / "out", name="img", cache_dir=tmp_path / "cache", **options)
    return pipeline.build(_kickstart(), opts, progress=progress, stages=stages), out.getvalue()


def test_progress_shows_each_stage_with_its_duration_and_total(tmp_path):
    clock = FakeClock()
    manifest, text = _run(tmp_path, [WritesRoot(clock), WritesManifest()])
    assert manifest == tmp_path / "out/img.json"
    lines = text.splitlines()
    assert lines[0] == "[1/2] fill: write into the root ..."
    assert lines[1] == "[1/2] fill: done in 1:05 (total 1:05)"
    assert lines[3] == "[2/2] manifest: done in 0:00 (total 1:05)"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.json"]  # the build root is gone


def test_failure_removes_the_partial_root(tmp_path):
    clock = FakeClock()
    with pytest.raises(OperationFailed):
        _run(tmp_path, [WritesRoot(clock), Raises(OperationFailed("tool failed"))])
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_removes_the_partial_root(tmp_path):
    clock = FakeClock()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, [WritesRoot(clock), Raises(KeyboardInterrupt())])
    assert list((tmp_path / "out").iterdir()) == []


def test_enospc_becomes_one_clear_message(tmp_path):
    clock = FakeClock()
    with pytest.raises(OperationFailed) as err:
        _run(tmp_path, [WritesRoot(clock), Raises(OSError(errno.ENOSPC, "No space left on device"))])
    assert str(err.value).startswith(f"out of disk space in {tmp_path / 'out'} during stage boom (")


def test_bad_input_passes_through_unchanged(tmp_path):
    clock = FakeClock()
    with pytest.raises(BadInput) as err:
        _run(tmp_path, [WritesRoot(clock), Raises(BadInput("no kernel", location="x.ks:3"))])
    assert str(err.value) == "x.ks:3: no kernel"


def test_keep_root_keeps_it(tmp_path):
    clock = FakeClock()
    _, text = _run(tmp_path, [WritesRoot(clock), WritesManifest()], keep_root=True)
    kept = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".img.build-")]
    assert len(kept) == 1 and (kept[0] / "root/etc/data").read_text() == "x"
    assert "kept the build root" in text
