"""The build pipeline: the ordered stages and the runner that shows progress and always cleans up.

OS image:    install → configure → accounts → post → initramfs → cleanup → pack → manifest
Installer:   install → configure → accounts → post → installer (tarball_builder.installer.make_installer)

Before an OS image is built, its cache key is computed (tarball_builder.reuse): when the previous
build in the output directory had the same key and its outputs are intact, they are reused as they are
and no stage runs. `--rebuild` (options.reuse False) skips that check; a finished build records its key.

The root is built in a scratch directory inside the output directory (`.NAME.build-XXXX/root`), so
the finished tarball is renamed into place without a copy and a full output disk fails the build
rather than another filesystem. On any failure, Ctrl-C included, the scratch directory (the partial
root) is removed, after making sure nothing is mounted below it.
"""
from __future__ import annotations

import errno
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

from metalstream import proc
from metalstream.contracts.manifests import write_document
from metalstream.errors import CommandError, MetalstreamError, OperationFailed
from metalstream.humanize import format_duration

from . import cache, reuse
from .backends import backend_for
from .context import Backend, BuildContext, BuildOptions, Stage
from .spec import SplitKickstart
from .stages.accounts import AccountsStage
from .stages.cleanup import CleanupStage
from .stages.configure import ConfigureStage
from .stages.initramfs import InitramfsStage
from .stages.install import InstallStage
from .stages.manifest import ManifestStage
from .stages.pack import PackStage
from .stages.post import PostStage

# SOURCE_DATE_EPOCH when none is given: a fixed base plus up to ~115 days taken from the kickstart's
# sha256. Stable for one kickstart, different for different ones, never in the future.
EPOCH_BASE = 1_700_000_000  # 2023-11-14
EPOCH_SPREAD = 10_000_000
HEARTBEAT_SECONDS = 30.0


def default_source_date_epoch(kickstart_sha256: str) -> int:
    return EPOCH_BASE + int(kickstart_sha256[:8] or "0", 16) % EPOCH_SPREAD


class InstallerStage:
    name = "installer"
    description = "make the installer kernel and initramfs"

    def run(self, ctx: BuildContext) -> None:
        from .installer import make_installer  # written by the installer component; imported only when asked for

        manifest = make_installer(ctx)
        ctx.facts["manifest_path"] = write_document(ctx.options.output_dir / f"{ctx.options.name}.json", manifest)


def stages_for(options: BuildOptions, backend: Backend) -> list[Stage]:
    head: list[Stage] = [InstallStage(backend), ConfigureStage(), AccountsStage(), PostStage()]
    if options.image_format == "installer":
        return [*head, InstallerStage()]
    return [*head, InitramfsStage(backend), CleanupStage(backend), PackStage(), ManifestStage(backend)]


class Progress:
    """Plain progress lines: each stage's start, a heartbeat while it runs, its duration and the total."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 heartbeat: float = HEARTBEAT_SECONDS):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.heartbeat = heartbeat
        self.start = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def stage_started(self, index: int, total: int, stage: Stage) -> float:
        self.say(f"[{index}/{total}] {stage.name}: {stage.description} ...")
        began = self.clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(index, total, stage.name, began), daemon=True)
        self._thread.start()
        return began

    def _beat(self, index: int, total: int, name: str, began: float) -> None:
        while not self._stop.wait(self.heartbeat):
            self.say(f"[{index}/{total}] {name}: still running, {format_duration(self.clock() - began)} elapsed")

    def stage_finished(self, index: int, total: int, stage: Stage, began: float, ok: bool) -> float:
        self._stop.set()
        if self._thread:
            self._thread.join()
        took = self.clock() - began
        state = "done" if ok else "FAILED"
        self.say(f"[{index}/{total}] {stage.name}: {state} in {format_duration(took)} "
                 f"(total {format_duration(self.clock() - self.start)})")
        return took


def build(kickstart: SplitKickstart, options: BuildOptions, *, progress: Progress | None = None,
          stages: list[Stage] | None = None) -> Path:
    """Run the stages (default: `stages_for` the options and the kickstart's distribution family);
    return the manifest path. Raises MetalstreamError with one clear message."""
    progress = progress or Progress()
    backend = None
    if stages is None:
        backend = backend_for(kickstart.build.distribution.family)
        stages = stages_for(options, backend)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    epoch = options.source_date_epoch
    if epoch is None:
        epoch = default_source_date_epoch(kickstart.sha256)
    key = None
    if backend is not None and options.image_format == "tarball":
        key, inputs = _image_key(kickstart, options, epoch, backend, progress)
        previous = reuse.reusable(options, key) if key and options.reuse else None
        if previous is not None:
            progress.say(f"reusing {options.output_dir / (options.name + '.tar.zst')}: kickstart, options, builder "
                         f"and repository metadata are unchanged since it was built (key {key[:16]}, "
                         f"{reuse.record_path(options).name}); --rebuild builds it anew")
            return previous
        reuse.forget(options)
    workdir = Path(tempfile.mkdtemp(prefix=f".{options.name}.build-", dir=options.output_dir))
    ctx = BuildContext(kickstart=kickstart, options=options, root=workdir / "root", workdir=workdir,
                       source_date_epoch=epoch)
    durations: dict[str, float] = {}
    ok = False
    try:
        for index, stage in enumerate(stages, start=1):
            began = progress.stage_started(index, len(stages), stage)
            stage_ok = False
            try:
                stage.run(ctx)
                stage_ok = True
            except OSError as exc:
                raise _explain_os_error(exc, stage, options) from exc
            except CommandError as exc:
                raise _explain_command_error(exc, stage, options) from exc
            finally:
                cache.release_locks(ctx)  # a package directory is locked only by the stage that uses it
                durations[stage.name] = progress.stage_finished(index, len(stages), stage, began, stage_ok)
                ctx.log.info("stage %s took %.1fs", stage.name, durations[stage.name])
        ok = True
    finally:
        cache.release_locks(ctx)
        _finish(ctx, ok, progress)
    for warning in ctx.facts.get("warnings", []):
        progress.say(f"warning: {warning}")
    manifest_path = ctx.facts["manifest_path"]
    if key is not None:
        reuse.remember(options, key, inputs, Path(ctx.facts["tarball"]["path"]), Path(manifest_path))
    progress.say(f"built {manifest_path} in {format_duration(sum(durations.values()))}")
    return manifest_path


def _image_key(kickstart: SplitKickstart, options: BuildOptions, epoch: int, backend: Backend,
               progress: Progress) -> tuple[str | None, dict]:
    """The image cache key and its inputs; (None, {}) when an input cannot be known (said, not fatal)."""
    try:
        return reuse.image_key(kickstart, options, epoch, backend.repository_metadata(kickstart))
    except reuse.NotReusable as exc:
        progress.say(f"not reusing a previous build: {exc}")
        return None, {}


def _finish(ctx: BuildContext, ok: bool, progress: Progress) -> None:
    leftover = mounts_below(ctx.workdir)
    for mountpoint in reversed(leftover):  # only a crashed tool could leave one; never delete through it
        proc.run(["umount", "--lazy", mountpoint], check=False, timeout=60)
    if mounts_below(ctx.workdir):
        raise OperationFailed(f"cannot remove {ctx.workdir}: something is still mounted below it")
    if ok and ctx.options.keep_root:
        progress.say(f"kept the build root at {ctx.root} (--keep-root)")
        return
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    if not ok and "tarball" in ctx.facts:
        Path(ctx.facts["tarball"]["path"]).unlink(missing_ok=True)  # no tarball without its manifest


def mounts_below(path: Path) -> list[str]:
    out = proc.run(["findmnt", "-rn", "-o", "TARGET"], check=False, timeout=60).stdout
    prefix = str(path.resolve())
    return sorted(m for m in out.splitlines() if m == prefix or m.startswith(prefix + "/"))


def _free_mib(path: Path) -> int:
    return shutil.disk_usage(path).free // 2**20


def _out_of_space(stage: Stage, options: BuildOptions) -> OperationFailed:
    return OperationFailed(f"out of disk space in {options.output_dir} during stage {stage.name} "
                           f"({_free_mib(options.output_dir)} MiB free); free some space or use another -o directory")


def _explain_os_error(exc: OSError, stage: Stage, options: BuildOptions) -> MetalstreamError:
    if exc.errno == errno.ENOSPC:
        return _out_of_space(stage, options)
    return OperationFailed(f"stage {stage.name}: {exc}")


def _explain_command_error(exc: CommandError, stage: Stage, options: BuildOptions) -> MetalstreamError:
    if "No space left on device" in exc.stderr:
        return _out_of_space(stage, options)
    return exc

